#ifndef PKG07_L07_05_H
#define PKG07_L07_05_H
#include <string>
#include <vector>

namespace l07_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l07_05

#endif
