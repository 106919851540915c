#ifndef PKG09_L09_05_H
#define PKG09_L09_05_H
#include <string>
#include <vector>

namespace l09_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l09_05

#endif
