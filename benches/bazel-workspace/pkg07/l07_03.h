#ifndef PKG07_L07_03_H
#define PKG07_L07_03_H
#include <string>
#include <vector>

namespace l07_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l07_03

#endif
