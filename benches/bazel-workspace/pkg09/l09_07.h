#ifndef PKG09_L09_07_H
#define PKG09_L09_07_H
#include <string>
#include <vector>

namespace l09_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l09_07

#endif
