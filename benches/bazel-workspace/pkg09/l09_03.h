#ifndef PKG09_L09_03_H
#define PKG09_L09_03_H
#include <string>
#include <vector>

namespace l09_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l09_03

#endif
