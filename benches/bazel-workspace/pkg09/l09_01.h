#ifndef PKG09_L09_01_H
#define PKG09_L09_01_H
#include <string>
#include <vector>

namespace l09_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l09_01

#endif
